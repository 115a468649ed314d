"""duban: 争先督办, a WeCom bot for a year-long action campaign."""
