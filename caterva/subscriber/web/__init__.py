"""The subscriber's read-only web page at ``/``: routes.py lists its routes and mounts them.

pages.py, assets.py, live.py, login.py   the handlers (HTML, files, events, login)
render.py, guard.py                      templates and errors; login, CSRF, CSP
listing.py, window.py, describe.py       what the pages show, read through the subscriber's
                                         own parts (SQLite index, follower, read path)
image.py                                 a plane as a PNG (colormap, scaling, encoder)
"""
