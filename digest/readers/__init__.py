"""Readers' lifecycle: the list, their subscriptions, sign-up, preferences, privacy and audit.

Beside delivery (a confirmation is sent through a transport): may import delivery, the edition,
the newsroom and the core; never feedback or the shells.

Modules: `subscribers`, `subscriptions`, `audit`, `suppression`, `signup`, `confirmation`,
`welcome` (the email after a confirmation), `preferences`, `privacy`.
"""
