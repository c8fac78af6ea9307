from kubedns.cli import main

raise SystemExit(main())
