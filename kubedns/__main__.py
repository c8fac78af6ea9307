from kubedns.cli import main  # type: ignore[import-not-found, unused-ignore]

raise SystemExit(main())
