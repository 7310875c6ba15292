from django.core.management.base import BaseCommand

from users.tokens import add_token


class Command(BaseCommand):
    help = 'Gives a user (created when new) an opaque token: addtoken <username> <token>'

    def add_arguments(self, parser):
        parser.add_argument('username')
        parser.add_argument('token')

    def handle(self, *args, **options):
        add_token(options['username'], options['token'])
