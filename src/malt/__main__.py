from malt.cli import main

raise SystemExit(main())
