from google.cloud import firestore, storage

from tests.conftest import TEST_BUCKET


def test_firestore_emulator_round_trip(db: firestore.Client) -> None:
    db.document("tenants/t1").set({"name": "Acme"})
    assert db.document("tenants/t1").get().to_dict() == {"name": "Acme"}


def test_projects_are_isolated(db: firestore.Client, emulators: dict[str, str]) -> None:
    other = firestore.Client(project="some-other-project")
    db.document("tenants/only-here").set({"name": "x"})
    assert not other.document("tenants/only-here").get().exists


def test_storage_emulator_round_trip(gcs: storage.Client) -> None:
    blob = gcs.bucket(TEST_BUCKET).blob("t/2011-11/x.pdf")
    blob.upload_from_string(b"%PDF-1.4", content_type="application/pdf")
    assert gcs.bucket(TEST_BUCKET).blob("t/2011-11/x.pdf").download_as_bytes() == b"%PDF-1.4"
