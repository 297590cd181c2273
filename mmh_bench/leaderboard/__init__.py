"""Results and the board: the strict result schema, the result store on disk, the rendered board and
the published (reported) numbers shipped with the package."""
