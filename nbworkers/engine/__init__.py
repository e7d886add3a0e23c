"""The engine: the runtime of one database file and the parts it is made of."""
