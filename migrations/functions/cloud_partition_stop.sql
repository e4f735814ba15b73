-- Whether an instance of service p_service is replaced at most once
-- (partition_policy stop: its agent fences it, docs/decisions.md §28). NULL
-- (a one-off) and keep: false.
CREATE OR REPLACE FUNCTION cloud_partition_stop(p_service text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT s.partition_policy = 'stop' FROM services s
                      WHERE s.id = p_service), false)
$$;
