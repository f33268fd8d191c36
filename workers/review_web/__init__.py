"""The reviewer triage web app on the review queue (`quoteguard review serve`).

Server-rendered pages (Starlette, Jinja2 with autoescape), one small script file for
keyboard shortcuts, the lease heartbeat and revealing obscured content. Content is hostile by
nature: it is rendered as text only, highlights are built by splitting it at offsets
(`highlight`), and a strict CSP allows no script but ours (`security`).

The package imports nothing itself, so `review add-user` (accounts only) does not load the
web stack: the app is `workers.review_web.app.create_app`.
"""
