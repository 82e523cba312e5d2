// Small SVG pictures. They draw only numbers the node returned: nothing is recounted or estimated here.
import { html } from "./common.js";

const WIDTH = 640;

function formatNumber(n) {
  return Number(n).toLocaleString("en");
}

// Long labels are cut to fit beside the bars; the full label is in each bar's tooltip.
function shorten(text, max = 30) {
  const value = String(text);
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

// Horizontal bars, one per item {label, value}; an item without a number (a yes/no answer) is drawn as a
// hatched bar saying "yes" or "no", never as a guessed length.
export function BarChart({ title, items, id }) {
  const numeric = items.filter((i) => typeof i.value === "number");
  const max = Math.max(1, ...numeric.map((i) => i.value));
  const row = 26;
  const labelWidth = 240;
  const barSpace = WIDTH - labelWidth - 70;
  const height = items.length * row + 10;
  return html`
    <figure class="chart" id=${id}>
      <figcaption>${title}</figcaption>
      <svg viewBox="0 0 ${WIDTH} ${height}" width="100%" role="img" aria-label=${title}>
        ${items.map((item, i) => {
          const y = i * row + 5;
          const hasNumber = typeof item.value === "number";
          const width = hasNumber ? Math.max(2, (item.value / max) * barSpace) : barSpace / 6;
          return html`
            <g class="bar">
              <text x=${labelWidth - 8} y=${y + 16} text-anchor="end" class="label">${shorten(item.label)}</text>
              <rect x=${labelWidth} y=${y} width=${width} height=${row - 8}
                class=${hasNumber ? "bar-fill" : item.value ? "bar-yes" : "bar-no"} />
              <text x=${labelWidth + width + 6} y=${y + 16} class="value">
                ${hasNumber ? formatNumber(item.value) : item.value ? "yes" : "no"}
              </text>
              <title>${item.label}: ${hasNumber ? formatNumber(item.value) : item.value ? "yes" : "no"}</title>
            </g>
          `;
        })}
      </svg>
    </figure>
  `;
}

// The genomic region of a variant query with a tick for each variant found (per chromosome).
export function RegionChart({ variants, range }) {
  const byChrom = new Map();
  for (const v of variants) {
    if (!byChrom.has(v.chrom)) byChrom.set(v.chrom, []);
    byChrom.get(v.chrom).push(v);
  }
  const tracks = [...byChrom.entries()];
  const trackHeight = 70;
  const margin = 40;
  const height = tracks.length * trackHeight + 10;
  return html`
    <figure class="chart" id="region-chart">
      <figcaption>Where the variants found lie</figcaption>
      <svg viewBox="0 0 ${WIDTH} ${height}" width="100%" role="img"
        aria-label=${`Region with ${variants.length} variant(s) found`}>
        ${tracks.map(([chrom, list], t) => {
          let lo = Math.min(...list.map((v) => v.start));
          let hi = Math.max(...list.map((v) => v.end));
          if (range && range.chrom === chrom) {
            lo = Math.min(lo, range.start);
            hi = Math.max(hi, range.end);
          }
          if (hi - lo < 100) {
            lo -= 50;
            hi += 50;
          }
          const x = (pos) => margin + ((pos - lo) / (hi - lo)) * (WIDTH - 2 * margin);
          const y = t * trackHeight + 30;
          return html`
            <g class="track">
              <text x=${margin} y=${y - 14} class="label">chr${chrom}</text>
              <line x1=${margin} x2=${WIDTH - margin} y1=${y} y2=${y} class="axis" />
              <text x=${margin} y=${y + 26} class="tick">${formatNumber(lo)}</text>
              <text x=${WIDTH - margin} y=${y + 26} text-anchor="end" class="tick">${formatNumber(hi)}</text>
              ${list.map(
                (v) => html`
                  <g class="variant">
                    <rect x=${x(v.start) - 2} y=${y - 10} width=${Math.max(4, x(v.end) - x(v.start))} height="20" />
                    <title>${v.label}</title>
                  </g>
                `,
              )}
            </g>
          `;
        })}
      </svg>
    </figure>
  `;
}
