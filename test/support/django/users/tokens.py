"""Adding and deleting tokens: shared by the addtoken/deltoken commands and serve.py's seeding."""
from .models import Token, User


def add_token(username, key):
    """Gives `username` (created when new) the token `key`; a key already held moves to `username`."""
    user, _ = User.objects.get_or_create(username=username)
    Token.objects.update_or_create(key=key, defaults={'user': user})


def delete_token(key):
    """Deletes the token `key`; its user stays. Returns whether it existed."""
    deleted, _ = Token.objects.filter(key=key).delete()
    return deleted > 0
