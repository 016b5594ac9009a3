"""A minimal Django project answering questions through gatewayclient's Django app.

To try it::

    cd examples/django_app
    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python manage.py check                      # the GATEWAYCLIENT setting is checked
    python manage.py runserver                  # or: gunicorn gatewaysite.wsgi -k gthread
                                                #     uvicorn gatewaysite.asgi:application
    curl -s localhost:8000/ask -H 'Content-Type: application/json' -d '{"question": "Hi?"}'
    curl -sN 'localhost:8000/stream?question=Hi%3F'          # server-sent events
    curl -sN 'localhost:8000/stream?question=Hi%3F&format=text'

``/ask`` and ``/stream`` are sync views (WSGI), ``/aask`` and ``/astream`` their async twins
(ASGI).
"""
