"""What the picture shows: shot boundaries, faces, and the reframing crop per shot."""
