from zen_flow.bench.cli import main

raise SystemExit(main())
