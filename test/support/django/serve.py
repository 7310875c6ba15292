"""Serves the fixture's WSGI application with the standard library's threaded WSGI server
(runserver cannot bind port 0 and adds an autoreloader and checks; gunicorn is one more
package). Usage: serve.py [PORT]; without a port the OS picks one.

Binds (exit 98 when the port is taken), migrates the database, adds the tokens in
PODGATE_DJANGO_TOKENS (a JSON object, token → user name) when it is set, then prints
{"listening": "http://127.0.0.1:PORT"} on stdout and serves, reporting one
{"request": {...}} line per request as its response starts."""
import errno
import json
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'podgate_auth.settings')

# The request headers the gateway forwards to an external verifier, reported per request.
REPORTED = {
    'cookie': 'HTTP_COOKIE',
    'authorization': 'HTTP_AUTHORIZATION',
    'x-original-url': 'HTTP_X_ORIGINAL_URL',
    'x-original-method': 'HTTP_X_ORIGINAL_METHOD',
    'host': 'HTTP_HOST',
}


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass  # each request is reported as JSON by `reporting` instead


def emit(line):
    sys.stdout.write(json.dumps(line) + '\n')
    sys.stdout.flush()


def reporting(application):
    def report(environ, start_response):
        def start(status, headers, exc_info=None):
            emit({'request': {
                'method': environ['REQUEST_METHOD'],
                'path': environ.get('PATH_INFO', ''),
                'status': int(status.split(' ', 1)[0]),
                'headers': {name: environ[key] for name, key in REPORTED.items() if key in environ},
            }})
            return start_response(status, headers, exc_info)
        return application(environ, start)
    return report


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # Bound before Django loads: a taken port fails fast, and the helper retries it.
    try:
        server = ThreadingWSGIServer(('127.0.0.1', port), QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            print(f'serve.py: port {port} is in use', file=sys.stderr)
            sys.exit(98)
        raise

    import django
    django.setup()
    from django.core.management import call_command
    from users.tokens import add_token
    call_command('migrate', verbosity=0, interactive=False)
    for key, username in json.loads(os.environ.get('PODGATE_DJANGO_TOKENS') or '{}').items():
        add_token(username, key)

    from podgate_auth.wsgi import application
    server.set_app(reporting(application))
    emit({'listening': f'http://127.0.0.1:{server.server_address[1]}'})
    server.serve_forever()


if __name__ == '__main__':
    main()
