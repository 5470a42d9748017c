"""The migrations build, from empty, exactly the schema the models describe, on either database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from apiauth import create_app
from apiauth.extensions import db

from .conftest import TEST_KEY


def test_every_migration_applies_from_empty_and_matches_the_models(tmp_path, empty_database_url):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "ENCRYPTION_KEYS": [TEST_KEY],
                      "SQLALCHEMY_DATABASE_URI": empty_database_url})
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert differences == []
        downgrade(revision="base")
        upgrade()
        db.engine.dispose()
