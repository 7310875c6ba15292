"""WSGI entry point, as gunicorn would load it in the original service's image (`podgate_auth.wsgi:application`)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'podgate_auth.settings')

application = get_wsgi_application()
