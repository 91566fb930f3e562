from modgraph.cli import main

raise SystemExit(main())
