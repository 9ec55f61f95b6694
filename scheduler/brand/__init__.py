"""Brand kits: a project's fonts, colours and logo, kept in Redis and applied to timelines that name one."""
