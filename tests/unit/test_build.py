import os

from ext import core


def test_the_expected_build_is_loaded():
    # `make test` runs the suite on the release build, then on the checked one
    assert core.CHECKED == (os.environ.get("FLOWGATE_EXPECT_CHECKED") == "1")
