from django.core.management.base import BaseCommand, CommandError

from users.tokens import delete_token


class Command(BaseCommand):
    help = 'Deletes an opaque token (its user stays): deltoken <token>'

    def add_arguments(self, parser):
        parser.add_argument('token')

    def handle(self, *args, **options):
        if not delete_token(options['token']):
            raise CommandError('no such token')
