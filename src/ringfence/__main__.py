from ringfence.cli import main

raise SystemExit(main())
