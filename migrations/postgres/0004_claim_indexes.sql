-- Claiming unsent outbox rows and undelivered notifications in `seq` order reads only the
-- unsettled rows: partial indexes on `seq` alone. Without them a claim's `ORDER BY seq LIMIT n`
-- walked the table in `seq` order past every row ever sent (measured: the claim, and so every
-- writer queued behind it, slowed down as the outbox grew).
DROP INDEX outbox_pending;
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX notifications_unsettled ON notifications (seq)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
-- Notifications are head-of-line per (Subscription, Task), not per Subscription: one Task's
-- changes still arrive in commit order, while other Tasks' are delivered side by side.
CREATE INDEX notifications_per_resource ON notifications
    (subscription_id, resource_type, resource_id, seq)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
