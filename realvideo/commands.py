"""`main.py data export` and `main.py data import` (issue 16): SynthAvatar as ordinary videos + manifest,
and the peers' metadata files as an ActSync manifest."""
from __future__ import annotations

import json
from pathlib import Path

from common.errors import ConfigError


def cmd_data_export(cfg, args) -> int:
    import av

    from realvideo.export import export_synthavatar
    av.logging.set_level(None)  # libx264's per-file statistics

    if not args.out:
        raise ConfigError("data export: --out DIR is required")
    splits = ("train", "val", "test") if args.split == "all" else (args.split,)
    summary = export_synthavatar(cfg.data, args.out, splits, args.max_clips, odd=args.odd,
                                 progress=not getattr(args, "quiet", False))
    print(json.dumps(summary))
    return 0


def cmd_data_import(cfg, args) -> int:
    from realvideo.manifest import import_diffsynth, import_videox, write_manifest

    if not args.source or not args.out:
        raise ConfigError("data import: --from diffsynth|videox FILE and --out manifest.jsonl are required")
    kind, path = args.source
    if kind == "diffsynth":
        entries, skipped = import_diffsynth(path), 0
    elif kind == "videox":
        entries, skipped = import_videox(path)
    else:
        raise ConfigError(f"data import --from {kind!r}: expected diffsynth or videox")
    out = write_manifest(Path(args.out), entries)
    print(f"{out}: {len(entries)} videos" + (f" ({skipped} image entries skipped)" if skipped else ""))
    return 0
