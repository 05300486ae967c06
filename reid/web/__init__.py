"""The citizen-science web app (``reid serve``): volunteers submit photos, a background worker
identifies them on the same pipeline as ``reid match``, experts review them in a queue, and
every decision goes into the gallery through its own enroll with its audit log.

Rooms: ``db`` (the app's own SQLite: submissions, photos, the queue, users, sessions, alerts),
``uploads`` (checks by content, durable storage), ``auth`` (argon2 passwords, sessions, CSRF),
``worker`` (identification off the request path), ``review`` (actions through the gallery),
``alerts`` (translocation and hybrid alerts), ``pictures`` (match sheets, Grad-CAM, maps),
``service`` (settings and loaded pieces), and the FastAPI side: ``app`` (factory and
middleware), ``pages`` (rendering, session checks, error pages), ``public`` (form, upload,
receipt, login) and ``review_pages`` (queue, actions, individuals, alerts) with ``templates/``.
"""
