"""The Veilpost messaging client (layer 4): identities, key packages, conversations, content,
the sync engine and encrypted storage. Sans-I/O: it talks to the relay only through the
:class:`~veilpost.client.relay.RelayPort` an adapter provides."""
