"""Excel in and out: the roster import and its template, the exported workbooks."""
