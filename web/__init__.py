"""`mailha web`: the operators' console and the users' page (HTTPS, Starlette on Hypercorn's trio worker)."""
