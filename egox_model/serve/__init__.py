"""Serving generators over HTTP: the wire format (`wire`), the bearer token (`auth`) and the
Ray Serve application (`app`, imported only by `egox serve`: it needs ray[serve])."""
