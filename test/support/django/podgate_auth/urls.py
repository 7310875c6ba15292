from django.urls import path

from users import views

urlpatterns = [
    path('auth/validate', views.auth_validate),
    path('whoami', views.whoami),
]
