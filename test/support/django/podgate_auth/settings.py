"""Settings of the podgate auth fixture: the original auth service, reduced to its user table
and its two views. The sqlite database lives where PODGATE_DJANGO_DB says (a test's temp dir)."""
import os

from django.core.exceptions import ImproperlyConfigured

if not os.environ.get('PODGATE_DJANGO_DB'):
    raise ImproperlyConfigured('PODGATE_DJANGO_DB must name the sqlite database file (in a temporary directory)')

# A test fixture: nothing is signed with it, and Django refuses to start without one.
SECRET_KEY = 'podgate-auth-fixture-not-a-secret'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']

INSTALLED_APPS = ['users']
# Django's default stack up to CommonMiddleware, which checks the Host against ALLOWED_HOSTS (400
# otherwise); the session, auth and CSRF middleware need apps the fixture does without.
MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.middleware.common.CommonMiddleware',
]
ROOT_URLCONF = 'podgate_auth.urls'
WSGI_APPLICATION = 'podgate_auth.wsgi.application'

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': os.environ['PODGATE_DJANGO_DB'],
    },
}
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
USE_TZ = True

# With DEBUG off Django prints nothing of a failed request; the test wants the traceback on stderr.
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'stderr': {'class': 'logging.StreamHandler'}},
    'loggers': {'django.request': {'handlers': ['stderr'], 'level': 'ERROR', 'propagate': False}},
}
