"""The content-addressed cache of operator results shared by every job: keys, entries, the runner's side of it."""
