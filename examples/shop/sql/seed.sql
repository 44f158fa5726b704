-- The shop's catalogue at the start of every drill (run by drillkit as the database superuser).
INSERT INTO items (sku, name, qty) VALUES
    ('mug-001', 'Mug, blue', 12),
    ('mug-002', 'Mug, red', 7),
    ('tee-001', 'T-shirt, size M', 30),
    ('cap-001', 'Cap', 4)
ON CONFLICT (sku) DO NOTHING;
