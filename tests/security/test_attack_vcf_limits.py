"""The attack matrix, hostile VCFs (issue 12 §4): a gzip bomb, a huge INFO field, a 1e6-sample header and an
endless job are refused by the reader's limits (gateway/variants/limits.py) or the job's wall time, quickly, with
an issue that names the limit; the server answers throughout."""

from __future__ import annotations

import random
import re
import zlib

import pytest

from tests.conftest import OPERATOR_TOKEN, wait_for_job
from tests.variants.vcfgen import header, write_vcf

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
MB = 2**20


def _gzip(parts, repeat: int = 1) -> bytes:
    """A gzip member of `parts` (bytes), the last part repeated `repeat` times, compressed as it streams."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [squeeze.compress(p) for p in parts[:-1]]
    out += [squeeze.compress(parts[-1]) for _ in range(repeat)]
    out.append(squeeze.flush())
    return b"".join(out)


def _validate(client, body: bytes, name: str) -> tuple[set[str], list[dict]]:
    resp = client.post(f"/validate?type=vcf&name={name}", data=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    issues = resp.get_json()[0]["issues"]
    return {i["code"] for i in issues}, issues


def _head(samples: list[str]) -> bytes:
    return ("\n".join(header(samples)) + "\n").encode()


@pytest.mark.parametrize("samples", [[], ["S1", "S2"]])
def test_a_gzip_bomb_stops_at_the_inflation_bound(client, samples):
    gt = "\tGT\t0/1\t0/0" if samples else ""
    block = "".join(f"chr1\t{1000 + i}\t.\tA\tG\t50\tPASS\t.{gt}\n" for i in range(1)).encode() * 8192
    inflated = len(_head(samples)) + 40 * len(block)
    body = _gzip([_head(samples), block], repeat=40)  # ~10 MB inflated from 20 kB
    assert len(body) < 2 * MB
    codes, issues = _validate(client, body, "bomb.vcf.gz")
    assert "vcf-decompression-bomb" in codes
    # stopped at the bound, not after inflating the whole stream (a time bound would flake on a loaded machine)
    bomb = next(i for i in issues if i["code"] == "vcf-decompression-bomb")
    read = int(re.search(r"\(([\d,]+) bytes from", bomb["message"]).group(1).replace(",", ""))
    assert read < inflated


@pytest.mark.parametrize("samples", [[], ["S1"]])
def test_a_huge_info_field_is_refused_without_reading_it_whole(client, samples, monkeypatch):
    # The bound lowered to 2 MB (the reader's child reads it from its environment), so that a line over it fits
    # a request body; the field is incompressible hex, so that the inflation bound does not answer first.
    monkeypatch.setenv("GATEWAY_VCF_MAX_LINE_BYTES", str(2 * MB))
    gt = b"\tGT\t0/1" if samples else b""
    field = random.Random(7).randbytes(3 * MB // 2).hex().encode()
    body = _gzip([_head(samples) + b"chr1\t1000\t.\tA\tG\t50\tPASS\tX=" + field + gt + b"\n"])
    codes, _ = _validate(client, body, "info.vcf.gz")
    assert "vcf-line-too-long" in codes
    header_line = _gzip([b"##fileformat=VCFv4.2\n##x=" + field + b"\n" + _head(samples)])
    codes, _ = _validate(client, header_line, "header.vcf.gz")
    assert "vcf-line-too-long" in codes


def test_a_million_sample_header_is_refused_before_htslib_parses_it(client):
    names = "\t".join(f"S{i:07d}" for i in range(1_000_000))
    body = _gzip([_head([])[:-1] + b"\tFORMAT\t" + names.encode() + b"\n"])
    codes, issues = _validate(client, body, "wide.vcf.gz")
    assert "vcf-too-many-samples" in codes
    assert not codes - {"vcf-too-many-samples"}, issues  # refused on the header alone: nothing else was read


def test_limits_leave_real_files_alone(client, reference_dir):
    for path in sorted((reference_dir / "vcf" / "cyvcf2").glob("*.vcf.gz"))[:4]:
        codes, _ = _validate(client, path.read_bytes(), path.name)
        assert not codes & {"vcf-decompression-bomb", "vcf-line-too-long", "vcf-too-many-samples"}, path


def test_a_vcf_job_has_a_wall_time_limit(gateway_config, tmp_path):
    from app import create_app

    # The limit is far below what the job needs even on an idle machine: starting the parsing child alone
    # takes longer than 0.05 s, and the file is large enough that its parse takes seconds.
    app = create_app({**gateway_config, "vcf_job_seconds": 0.05})
    client = app.test_client()
    vcf = write_vcf(tmp_path / "slow.vcf", seed=3, n_records=20_000, n_samples=32)
    resp = client.post(
        "/datasets/slow/vcf?assembly=GRCh38", data=vcf.read_bytes(), headers={**OPERATOR, "Content-Type": "text/plain"}
    )
    assert resp.status_code == 202
    state = wait_for_job(client, resp.headers["Location"])
    assert state["status"] == "rejected", state
    assert state["issues"][0]["code"] == "vcf-time-limit"
    assert client.get("/health").status_code == 200
    app.extensions["gateway"].store.close()
