-- A label key: an optional DNS-subdomain prefix and '/', then a name of
-- 1..63 [A-Za-z0-9._-] starting and ending with a letter or digit.
CREATE OR REPLACE FUNCTION cloud_label_key_ok(k text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT length(k) <= 317
       AND k ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$'
       AND (position('/' IN k) = 0 OR position('/' IN k) <= 254)
$$;
