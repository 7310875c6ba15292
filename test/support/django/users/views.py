"""The original service's two views: /auth/validate answers X-User-ID (for ingress-nginx
auth-url) and /whoami answers X-Target-Service: user-<name> (for an OpenResty dispatcher). Both read the token
from the `session` cookie first, then from `Authorization: Bearer <token>`, and answer 401
without a known token. Differences from the original: X-User-ID is the user name, not the numeric
row id, since podgate routes by name; and /whoami answers an unknown token 401, not 403."""
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import Token


def extract_token(request):
    # 1) the cookie first
    cookie = request.COOKIES.get('session')
    if cookie:
        return cookie
    # 2) then a bearer token
    auth = request.META.get('HTTP_AUTHORIZATION', '')
    if auth.lower().startswith('bearer '):
        return auth[7:].strip() or None
    return None


def user_for(token):
    found = Token.objects.select_related('user').filter(key=token).first()
    return found.user if found else None


@csrf_exempt
@require_http_methods(['GET', 'POST'])
def auth_validate(request):
    token = extract_token(request)
    user = user_for(token) if token else None
    if user is None:
        return HttpResponse(status=401)
    # Authenticated: the user's identity goes back in a response header
    response = HttpResponse(status=200)
    response['X-User-ID'] = user.username
    return response


@csrf_exempt
def whoami(request):
    token = extract_token(request)
    if not token:
        return JsonResponse({'error': 'no token'}, status=401)
    user = user_for(token)
    if user is None:
        return JsonResponse({'error': 'invalid token'}, status=401)
    # The target Service's name goes back in a response header
    return JsonResponse({'user': user.username}, headers={'X-Target-Service': f'user-{user.username}'})
