from govbus import protogen


def test_generated_code_is_fresh() -> None:
    assert protogen.check() == [], "run `make proto` and commit govbus/pb"


def test_generated_imports_stay_inside_the_package() -> None:
    for path in protogen.OUT_DIR.rglob("*.py"):
        text = path.read_text()
        assert "\nfrom govbus.v1 " not in text, path
        assert "\nfrom agencies." not in text, path
