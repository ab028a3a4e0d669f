from zen_flow_dev.bench.cli import main

raise SystemExit(main())
