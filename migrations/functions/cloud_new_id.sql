-- A new object id: 16 random hex digits.
CREATE OR REPLACE FUNCTION cloud_new_id() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)
$$;
