-- Self-fencing (issue 14, docs/decisions.md §28): an agent that has heard
-- from no controller for fence_after_seconds stops the instances of
-- services with partition_policy "stop". The controller marks a host down
-- only after down_after_seconds, and the API keeps fence_after_seconds + 3
-- below it (the 3 s margin covers the agent's timer and the destroy); the
-- CHECK repeats that as the last line. 20 s is below the default 30 s
-- down_after by more than the margin.
ALTER TABLE cluster_settings
    ADD COLUMN fence_after_seconds integer DEFAULT 20 NOT NULL,
    ADD CONSTRAINT cluster_settings_fence_after_seconds_check
        CHECK (fence_after_seconds >= 3 AND fence_after_seconds <= 3600);
-- A cluster whose down_after is below 24 s gets the largest fence_after
-- the rule allows; below 7 s, down_after itself becomes 7 s (fence_after
-- is at least 3 s: more than the 2 s between two heartbeat flushes).
UPDATE cluster_settings
   SET fence_after_seconds = greatest(3, least(20, down_after_seconds - 4)),
       down_after_seconds = greatest(down_after_seconds, 7)
 WHERE fence_after_seconds + 3 >= down_after_seconds;
ALTER TABLE cluster_settings
    ADD CONSTRAINT cluster_settings_fence_before_down_check
        CHECK (fence_after_seconds + 3 < down_after_seconds);
