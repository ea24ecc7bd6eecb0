"""Password hashes made by the libraries platforms store them with, for the import tests.

  python3 legacy_hashes.py > accounts.json

Output: {"accounts": [{"email", "password", "password_hash", "library"}]}: one account per
format `tessera users import` accepts, each hashed by the real library (passlib, Django's
hashers with their default settings, bcrypt), never by a re-implementation.
"""
import json

import bcrypt
import django
from django.conf import settings
from passlib.hash import argon2 as passlib_argon2
from passlib.hash import pbkdf2_sha256 as passlib_pbkdf2_sha256

DJANGO_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.BCryptPasswordHasher",
]


def main():
    # Each account its own password, so no hash can pass by matching another's.
    made = []

    def add(library, password, password_hash):
        email = f"{library.replace('_', '-').replace(' ', '-')}@example.com"
        made.append(
            {
                "email": email,
                "password": password,
                "password_hash": password_hash,
                "library": library,
            }
        )

    # The ETL platform's format: passlib PBKDF2-SHA256, 100,000 iterations.
    password = "pbkdf2 from passlib"
    add("passlib pbkdf2", password, passlib_pbkdf2_sha256.using(rounds=100_000).hash(password))
    password = "argon2 from passlib"
    add("passlib argon2", password, passlib_argon2.hash(password))
    for bcrypt_prefix in (b"2b", b"2a"):
        password = f"bcrypt {bcrypt_prefix.decode()} from bcrypt"
        salt = bcrypt.gensalt(rounds=10, prefix=bcrypt_prefix)
        add(f"bcrypt {bcrypt_prefix.decode()}", password, bcrypt.hashpw(password.encode(), salt).decode())
    # bcrypt_sha256 exists for passwords past bcrypt's 72 bytes: use one.
    long_password = "a passphrase longer than bcrypt's seventy-two byte limit, " * 2
    password_for = {
        "pbkdf2_sha256": "pbkdf2 from django",
        "argon2": "argon2 from django",
        "bcrypt_sha256": long_password,
        "bcrypt": "bcrypt from django",
    }
    for name, password_hash in django_hashes(password_for).items():
        add(f"django {name}", password_for[name], password_hash)
    print(json.dumps({"accounts": made}))


def django_hashes(passwords):
    """Django's own `make_password`, each hasher at its default cost, over its password."""
    settings.configure(PASSWORD_HASHERS=DJANGO_HASHERS)
    django.setup()
    from django.contrib.auth.hashers import make_password

    return {name: make_password(password, hasher=name) for name, password in passwords.items()}


if __name__ == "__main__":
    main()
