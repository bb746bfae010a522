"""Delivery events back into journeys: provider callbacks (SendGrid's Signed Event Webhook, Expo
push receipts, the HMAC-signed generic format of SMS and webhooks) verified, parsed into
`DeliveryEvent`s, and published once each on `user-events` as `message_*` events."""
