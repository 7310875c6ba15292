"""The original service's user table, with its opaque token moved to a table of its own so that one user
can hold several (a browser session and an API token, say)."""
from django.db import models


class User(models.Model):
    username = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.username


class Token(models.Model):
    # Stored as given, like the original User.token; a real service would store a hash.
    key = models.CharField(max_length=128, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name='tokens')
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f'token of {self.user.username}'
