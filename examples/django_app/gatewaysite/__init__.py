"""A minimal Django project whose view answers questions through one shared SyncGatewayClient.

To try it::

    cd examples/django_app
    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python manage.py runserver
    curl -s localhost:8000/ask -H 'Content-Type: application/json' -d '{"question": "Hi?"}'
"""
