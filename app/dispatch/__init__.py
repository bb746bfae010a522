"""From the engine's send effects to dispatch records on the `send` topic, through Redis: the branch
lock that lets one branch of an entry fire, and the buffer that batches recipients."""
