"""What every caterva daemon (publisher, subscriber, and the broker's runner) shares: HTTP
errors and request bodies (http), accounts and tokens (auth), security settings (security),
MQTT birth and last will (presence), and running uvicorn on a bound socket (runner)."""
