"""`gateway validate`: the command-line face of the validation engine.

Exit codes: 0 no errors, 1 a file has errors (`--strict`: or warnings), 2 usage error.
Many files are validated in a process pool (forked after the HPO is loaded, so workers share it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gateway.validation.engine import KINDS, FileResult, Options, validate_bytes, validate_path
from gateway.validation.report_format import FORMATS, render

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
PARALLEL_FROM = 200  # below this many files a pool costs more than it saves
_HPO_ID = re.compile(r"HP:\d{7}")


def add_validate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "validate",
        help="check FHIR, Phenopacket, Beacon and VCF files (kind detected)",
        description="Validate files; exit 0 when no errors, 1 when any file has errors (--strict: warnings too).",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="files to validate; '-' reads standard input")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="FILE", help="a file (repeatable)")
    parser.add_argument("--type", choices=KINDS, help="force the kind instead of detecting it")
    parser.add_argument("--profile", help="national profile for FHIR input (mappings/profiles)")
    parser.add_argument(
        "-s", "--organ-system", action="append", default=[], metavar="HP:…", help="HPO organ system to annotate"
    )
    parser.add_argument("--require", action="append", default=[], metavar="SCHEMA", help="extra JSON Schema")
    parser.add_argument("--hpo", metavar="HP_JSON", help="an obographs hp.json instead of the bundled HPO (hpo3)")
    parser.add_argument("--no-hpo", action="store_true", help="skip the HPO checks")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    parser.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (0: automatic)")
    parser.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
    parser.set_defaults(func=cmd_validate)
    return parser


def _usage(message: str) -> int:
    print(f"gateway validate: {message}", file=sys.stderr)
    return EXIT_USAGE


def _options(args: argparse.Namespace) -> Options | str:
    """The engine options, or a usage error message."""
    for term in args.organ_system:
        if not _HPO_ID.fullmatch(term):
            return f"--organ-system {term!r} is not an HPO id (HP:nnnnnnn)"
    for schema in args.require:
        try:
            import jsonschema_rs

            jsonschema_rs.validator_for(json.loads(Path(schema).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            return f"--require {schema}: {exc}"
    if args.profile:
        import mappings

        if args.profile not in mappings.profile_names():
            return f"unknown profile {args.profile!r}; known: {', '.join(mappings.profile_names())}"
    if args.hpo and not Path(args.hpo).is_file():
        return f"--hpo {args.hpo}: no such file"
    return Options(
        kind=args.type,
        profile=args.profile,
        organ_systems=tuple(args.organ_system),
        require=tuple(str(Path(s).resolve()) for s in args.require),
        hpo=not args.no_hpo,
        hpo_file=args.hpo,
    )


def _worker(job: tuple[str, Options]) -> FileResult:
    return validate_path(*job)


def validate_many(
    paths: Sequence[str], options: Options, *, jobs: int = 0, progress: Callable | None = None
) -> list[FileResult]:
    """Validate files in input order; in a process pool when there are many. `progress(n)` after each n files."""
    if options.hpo or options.organ_systems:
        from gateway.validation.hpo import load_ontology

        load_ontology(options.hpo_file)  # before forking: every worker inherits the loaded ontology
    workers = jobs or (os.cpu_count() or 1)
    if workers <= 1 or len(paths) < PARALLEL_FROM:
        results = []
        for path in paths:
            results.append(validate_path(path, options))
            if progress:
                progress(1)
        return results
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    context = multiprocessing.get_context("fork")
    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for result in pool.map(_worker, [(p, options) for p in paths], chunksize=chunk):
            results.append(result)
            if progress:
                progress(1)
    return results


def exit_code(results: Sequence[FileResult], *, strict: bool = False) -> int:
    if any(not r.valid for r in results):
        return EXIT_INVALID
    if strict and any(r.report.warnings for r in results):
        return EXIT_INVALID
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [*args.input, *args.files]
    if not paths:
        return _usage("no input: give files, -i FILE, or - for standard input")
    options = _options(args)
    if isinstance(options, str):
        return _usage(options)
    stdin_result = None
    if "-" in paths:
        stdin_result = validate_bytes(sys.stdin.buffer.read(), "-", options)
    files = [p for p in paths if p != "-"]
    show = len(files) > 1 and (sys.stderr.isatty() or args.progress)
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", file=sys.stderr, leave=False)
    try:
        by_path = validate_many(files, options, jobs=args.jobs, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    iterator = iter(by_path)
    results = [stdin_result if p == "-" else next(iterator) for p in paths]
    sys.stdout.write(render(results, args.format, colour=args.format == "text" and sys.stdout.isatty()))
    return exit_code(results, strict=args.strict)
