"""A synthetic demo cohort, light enough to build at start-up: no real person, no heavy dependency.

`synthetic_cohort(n, seed)` makes FHIR R4 patients (sex, birth date, HPO findings, an Orphanet
diagnosis, a blood specimen) and a cohort VCF whose samples are those patients (each carries a
variant in the gene of their condition, plus background variants). `load_demo(services)` sends
them through the real pipelines (`ingest_fhir`, then `ingest_vcf` with the keyed sample linker)
into the dataset `DEMO_DATASET_ID`, declared PUBLIC with the open policy: it holds no real person.
The same data answer Beacon `testMode: true` requests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import random
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

from gateway.config import Config, DatasetConfig
from gateway.services.genomic import sample_linker
from gateway.services.ingest import ingest_fhir
from gateway.store.metadata import MetadataStore
from gateway.variants.ingest import ingest_vcf
from gateway.variants.protocol import VariantReader, VariantStore

DEMO_DATASET_ID = "synthetic-demo"
DEMO_SIZE = 60
DEMO_SEED = 20240601
IDENTIFIER_SYSTEM = "urn:gateway:demo:patient"
HPO = "http://human-phenotype-ontology.org"
ORPHA = "http://www.orpha.net"
SPECIMEN_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0487"
_DATA = Path(__file__).with_name("data")
_NOW = datetime(2024, 6, 1, tzinfo=UTC)  # ages are computed at a fixed date: the cohort is reproducible

DEMO_DATASET = DatasetConfig(
    id=DEMO_DATASET_ID,
    name="Synthetic demo cohort",
    description="Generated patients and genotypes (no real person): the node's demo and testMode data.",
    security_level="PUBLIC",
    data_use_conditions=("DUO:0000004",),
    policy={"profile": "open"},
)


@cache
def _blocks() -> dict:
    return json.loads((_DATA / "cohort.json").read_text())


@dataclass(frozen=True)
class SyntheticCohort:
    bundle: dict  # a FHIR transaction Bundle
    vcf_text: str
    sample_map: dict[str, str]  # VCF sample → "system|value" patient identifier
    conditions: dict[str, str]  # patient identifier value → Orphanet CURIE


def synthetic_cohort(n: int = DEMO_SIZE, seed: int = DEMO_SEED) -> SyntheticCohort:
    rng = random.Random(seed)
    blocks = _blocks()
    entries: list[dict] = []
    patients: list[tuple[str, dict]] = []
    conditions: dict[str, str] = {}
    for i in range(n):
        value = f"DEMO-{i + 1:05d}"
        condition = blocks["conditions"][i % len(blocks["conditions"])]
        patient_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        born = date(rng.randint(1950, 2020), rng.randint(1, 12), rng.randint(1, 28))
        entries.append(
            _entry(
                patient_url,
                {
                    "resourceType": "Patient",
                    "identifier": [{"system": IDENTIFIER_SYSTEM, "value": value}],
                    "gender": rng.choice(["female", "male"]) if rng.random() > 0.05 else "unknown",
                    "birthDate": born.isoformat(),
                },
            )
        )
        subject = {"reference": patient_url}
        features = [f for f in condition["features"] if rng.random() < f[2]] or condition["features"][:1]
        features += [f for f in blocks["background_features"] if rng.random() < f[2]]
        for curie, label, _ in features:
            entries.append(_entry(_url(rng), _hpo_observation(subject, curie, label, True)))
        absent = [f for f in condition["features"] if f not in features][:1]
        for curie, label, _ in absent:  # an explicitly excluded finding, as clinicians record them
            entries.append(_entry(_url(rng), _hpo_observation(subject, curie, label, False)))
        entries.append(
            _entry(
                _url(rng),
                {
                    "resourceType": "Condition",
                    "subject": subject,
                    "code": {"coding": [{"system": ORPHA, "code": condition["orpha"], "display": condition["label"]}]},
                },
            )
        )
        entries.append(
            _entry(
                _url(rng),
                {
                    "resourceType": "Specimen",
                    "subject": subject,
                    "type": {"coding": [{"system": SPECIMEN_TYPES, "code": "BLD"}]},
                    # a dated event: the translator derives the age at last encounter from it
                    "collection": {"collectedDateTime": _NOW.date().isoformat()},
                },
            )
        )
        patients.append((value, condition))
        conditions[value] = f"ORPHA:{condition['orpha']}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    samples = [f"S{i + 1:05d}" for i in range(n)]
    sample_map = {s: f"{IDENTIFIER_SYSTEM}|{v}" for s, (v, _) in zip(samples, patients, strict=True)}
    return SyntheticCohort(bundle, _vcf(rng, samples, [c for _, c in patients]), sample_map, conditions)


def _url(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"


def _entry(full_url: str, resource: dict) -> dict:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def _hpo_observation(subject: dict, curie: str, label: str, present: bool) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": subject,
        "code": {"coding": [{"system": HPO, "code": curie, "display": label}]},
        "valueBoolean": present,
    }


_ANN_HEADER = (
    "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
    "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
    "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS / WARNINGS / INFO' \">"
)


def _vcf(rng: random.Random, samples: list[str], conditions: list[dict]) -> str:
    blocks = _blocks()
    lines = ["##fileformat=VCFv4.2", "##reference=GRCh38"]
    lines += [f"##contig=<ID={c},length={n},assembly=GRCh38>" for c, n in blocks["contigs"].items()]
    lines += [_ANN_HEADER, '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]))
    records: list[tuple[str, int, str]] = []
    for condition in blocks["conditions"]:  # the causal variant: heterozygous in every patient with the condition
        ref, alt = rng.sample("ACGT", 2)
        gts = ["0/1" if c is condition else "0/0" for c in conditions]
        ann = f"ANN={alt}|stop_gained|HIGH|{condition['gene']}|{condition['gene']}|transcript|.|protein_coding|1/1|.|{condition['protein']}"
        records.append((condition["chrom"], condition["pos"], f"{ref}\t{alt}\t60\tPASS\t{ann}\tGT\t" + "\t".join(gts)))
    chrom, start, end = blocks["background_region"]
    for pos in sorted(rng.sample(range(start, end), 150)):
        ref, alt = rng.sample("ACGT", 2)
        frequency = rng.choice([0.01, 0.05, 0.2, 0.5])
        gts = [_genotype(rng, frequency) for _ in samples]
        records.append((chrom, pos, f"{ref}\t{alt}\t50\tPASS\t.\tGT\t" + "\t".join(gts)))
    order = {c: i for i, c in enumerate(blocks["contigs"])}
    for chrom_name, pos, rest in sorted(records, key=lambda r: (order[r[0]], r[1])):
        lines.append(f"{chrom_name}\t{pos}\t.\t{rest}")
    return "\n".join(lines) + "\n"


def _genotype(rng: random.Random, frequency: float) -> str:
    alleles = [int(rng.random() < frequency) for _ in range(2)]
    return f"{alleles[0]}/{alleles[1]}"


# --- loading --------------------------------------------------------------------------------


def demo_config(config: Config) -> Config:
    """`config` with the demo dataset declared (PUBLIC, open policy), unless it is already."""
    if config.dataset(DEMO_DATASET_ID) is not None:
        return config
    return replace(config, datasets=(*config.datasets, DEMO_DATASET))


def demo_loaded(store: MetadataStore, variants: VariantReader | None) -> bool:
    if variants is None or DEMO_DATASET_ID not in variants.datasets():
        return False
    _, total = store.list_phenopackets(dataset_id=DEMO_DATASET_ID, limit=0)
    return total > 0


def load_demo(
    config: Config,
    key: bytes,
    store: MetadataStore,
    variants: VariantStore | None,
    *,
    n: int = DEMO_SIZE,
    seed: int = DEMO_SEED,
) -> None:
    """Generate the cohort and ingest it through the real pipelines (once per data directory)."""
    folder = Path(config.data_dir) / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:  # several workers may start at once: one generates
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if demo_loaded(store, variants):
                return
            cohort = synthetic_cohort(n, seed)
            store.ensure_dataset(DEMO_DATASET_ID, name=DEMO_DATASET.name, description=DEMO_DATASET.description)
            outcome = ingest_fhir(cohort.bundle, store=store, key=key, dataset_id=DEMO_DATASET_ID, now=_NOW)
            if not outcome.stored:
                raise RuntimeError(f"the demo cohort was refused: {outcome.report.to_text('demo')[:500]}")
            vcf = folder / "cohort.vcf"
            vcf.write_text(cohort.vcf_text)
            ingest_vcf(
                vcf,
                dataset_id=DEMO_DATASET_ID,
                data_dir=Path(config.data_dir),
                assembly="GRCh38",
                sample_map=cohort.sample_map,
                link_sample=sample_linker(store, key),
            )
            if variants is not None:
                variants.refresh()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)


class SyntheticTestData:
    """The synthetic cohort as the data behind Beacon `testMode` (gateway.beacon.context.TestModeData).

    Wired by `create_app`; generated on the first testMode request when the node was not started
    with `--demo` (then it answers testMode requests only: `hidden`).
    """

    dataset_id = DEMO_DATASET_ID

    def __init__(
        self, config: Config, key: bytes, store: MetadataStore, variants: VariantStore | None, *, hidden: bool
    ):
        self._config, self._key, self._store, self._variants = config, key, store, variants
        self._hidden = hidden
        self._ready = False
        self._lock = threading.Lock()

    @property
    def hidden(self) -> bool:
        return self._hidden

    def prepare(self) -> Config:
        with self._lock:
            if not self._ready:
                if not demo_loaded(self._store, self._variants):
                    load_demo(self._config, self._key, self._store, self._variants)
                self._ready = True
        return demo_config(self._config)
