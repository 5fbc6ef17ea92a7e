//! `serve` over static generators: routes, errors, ordering, live reload, shutdown.
