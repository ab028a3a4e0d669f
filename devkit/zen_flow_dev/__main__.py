from zen_flow_dev.cli import main

raise SystemExit(main())
