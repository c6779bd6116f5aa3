"""6. Secrets: after every fault above, no plaintext API key anywhere the service writes.

Every plaintext key the suite used (each scenario's user, and the plaintext key some malformed messages
carried where the token belongs) is looked for in every Redis key name and every value of every type, in
every dead letter, and in every log of every program (the workers, the health API; all runs, restarts included).
"""

from __future__ import annotations

from typing import Any

from asset_post_process.devkit.chaos import scan_files, scan_redis


def test_no_plaintext_key_in_redis_logs_or_dead_letters(chaos: Any, figures: Any) -> None:
    needles = list(dict.fromkeys(chaos.apikeys))
    if not needles:  # this scenario run alone: make one user and one event so there is something to look for
        account = chaos.new_account()
        needles = [account.apikey]
    keys_scanned, in_redis = scan_redis(chaos.client(), needles)
    letters = list(chaos.dead_letters().iter())
    in_letters = [letter.id for letter in letters if any(n in letter.to_json() for n in needles)]
    log_files = sorted(chaos.logs_dir.glob("*.log"))
    files, size, in_logs = scan_files(log_files, needles)
    figures(
        "6. secrets",
        plaintext_keys_looked_for=len(needles),
        redis_keys_scanned=keys_scanned,
        found_in_redis=len(in_redis),
        dead_letters_scanned=len(letters),
        found_in_dead_letters=len(in_letters),
        log_files_scanned=files,
        log_mib_scanned=size / 2**20,
        found_in_logs=len(in_logs),
    )
    assert keys_scanned > 0
    assert files > 0
    assert not in_redis, in_redis[:10]
    assert not in_letters, in_letters[:10]
    assert not in_logs, in_logs[:10]
