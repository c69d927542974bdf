"""The reference THREAD algorithms: imapd's object form before issue 17 (one `Node` per
container), kept to check the flat form in imapd/message/threads.py against
(tests/test_imap_thread_flat.py). It was checked against Dovecot by
tests/test_imap_message_sort_thread.py while it was imapd's.

Pure: messages in (number + SortKeys), a forest of `Node`s out, and
`render` turns the forest into the THREAD response's thread list.
Every loop is linear or n log n in the number of messages; reference chains
are bounded by `sort_keys.message_ids`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from mailparse.sort_keys import SortKeys
from mailparse.sort_spec import ThreadAlgorithm

__all__ = ["Node", "ThreadAlgorithm", "render", "thread"]


@dataclass(eq=False, slots=True)
class Node:
    """A message (number and keys) or a dummy (both None), with ordered children."""

    number: int | None = None
    keys: SortKeys | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def first_message(self) -> Node:
        """Itself, or for a dummy its first child that is a message (after sorting)."""
        node = self
        while node.number is None and node.children:
            node = node.children[0]
        return node

    def date_key(self) -> tuple[int, int]:
        first = self.first_message()
        assert first.keys is not None and first.number is not None
        return first.keys.sent, first.number

    def latest_key(self) -> tuple[int, int]:
        """The newest (sent date, number) in the whole subtree (REFS orders threads by it)."""
        best = (-(2**62), -1)
        todo = [self]
        while todo:
            node = todo.pop()
            if node.keys is not None and node.number is not None:
                best = max(best, (node.keys.sent, node.number))
            todo.extend(node.children)
        return best

    def is_ancestor_of(self, other: Node) -> bool:
        node: Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def adopt(self, child: Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)


def thread(algorithm: ThreadAlgorithm, messages: Sequence[tuple[int, SortKeys]]) -> list[Node]:
    """The thread forest of `messages` (number, keys), roots in response order."""
    if algorithm is ThreadAlgorithm.ORDEREDSUBJECT:
        return _ordered_subject(messages)
    roots = _reference_roots(messages)
    if algorithm is ThreadAlgorithm.REFERENCES:
        # Step 5: a dummy root is dated (and, in step 6, named) by its first child by date.
        for root in roots:
            if root.number is None:
                root.children.sort(key=Node.date_key)
        roots.sort(key=Node.date_key)
        roots = _merge_by_subject(roots)
        _sort_siblings(roots)
        roots.sort(key=Node.date_key)
        return roots
    _sort_siblings(roots)
    roots.sort(key=Node.latest_key)
    return roots


def _ordered_subject(messages: Sequence[tuple[int, SortKeys]]) -> list[Node]:
    ordered = sorted(messages, key=lambda m: (m[1].subject, m[1].sent, m[0]))
    roots: list[Node] = []
    current: Node | None = None
    for number, keys in ordered:
        node = Node(number, keys)
        if current is not None and current.keys is not None and current.keys.subject == keys.subject:
            current.adopt(node)
        else:
            current = node
            roots.append(node)
    roots.sort(key=Node.date_key)
    return roots


def _reference_roots(messages: Sequence[tuple[int, SortKeys]]) -> list[Node]:
    """RFC 5256 REFERENCES steps 1-4: link containers by msg-id, gather roots, prune dummies."""
    table: dict[bytes, Node] = {}
    for number, keys in sorted(messages, key=itemgetter(0)):
        # 1.A: link the References chain, never re-parenting and never making a loop.
        previous: Node | None = None
        for ref in keys.parent_ids:
            container = table.get(ref)
            if container is None:
                container = table[ref] = Node()
            if previous is not None and container.parent is None and not container.is_ancestor_of(previous):
                previous.adopt(container)
            previous = container
        # 1.B: this message's own container; a duplicate Message-ID gets a fresh one.
        own: Node | None = None
        if keys.message_id is not None:
            existing = table.get(keys.message_id)
            if existing is None:
                own = table[keys.message_id] = Node()
            elif existing.number is None:
                own = existing  # named by an earlier message's References
        if own is None:
            own = table[b"\0%d" % number] = Node()
        own.number, own.keys = number, keys
        # The last reference is the parent; a link it had from a truncated chain is replaced.
        if own.parent is not None:
            own.parent.children.remove(own)
            own.parent = None
        if previous is not None and not own.is_ancestor_of(previous):
            previous.adopt(own)
    # 2: the root set.
    seen: set[int] = set()
    roots = []
    for node in table.values():
        if node.parent is None and id(node) not in seen:
            seen.add(id(node))
            roots.append(node)
    # 4: prune dummies.
    return _prune(roots, top=True)


def _prune(nodes: Iterable[Node], *, top: bool) -> list[Node]:
    kept: list[Node] = []
    for node in nodes:
        if node.children:  # (most messages have none: no call, no new list)
            node.children = _prune(node.children, top=False)
            for child in node.children:
                child.parent = node
        if node.number is not None:
            kept.append(node)
        elif not node.children:
            continue  # 4.A: an empty dummy goes
        elif not top or len(node.children) == 1:
            # 4.B: promote the children, but not several of them to the root level.
            for child in node.children:
                child.parent = None
            kept.extend(node.children)
        else:
            kept.append(node)
    return kept


def _merge_by_subject(roots: list[Node]) -> list[Node]:
    """RFC 5256 REFERENCES step 6: gather root threads with the same base subject."""
    table: dict[str, Node] = {}
    for root in roots:
        subject = _subject(root)
        if not subject:
            continue
        old = table.get(subject)
        if (
            old is None
            or (root.number is None and old.number is not None)
            or (_is_reply(old) and not _is_reply(root) and root.number is not None)
        ):
            table[subject] = root
    result: list[Node] = []
    placed: dict[int, int] = {}  # id(table entry) -> its index in result
    for root in roots:
        subject = _subject(root)
        entry = table.get(subject) if subject else None
        if entry is None or entry is root:
            if id(root) not in placed:
                placed[id(root)] = len(result)
                result.append(root)
            continue
        if id(entry) not in placed:
            placed[id(entry)] = len(result)
            result.append(entry)
        if entry.number is None and root.number is None:
            for child in list(root.children):
                entry.adopt(child)
        elif entry.number is None or (not _is_reply(entry) and _is_reply(root)):
            # The entry is a dummy, or the original of which this root is a reply.
            entry.adopt(root)
        else:
            dummy = Node()
            index = placed.pop(id(entry))
            dummy.adopt(entry)
            dummy.adopt(root)
            result[index] = dummy
            placed[id(dummy)] = index
            table[subject] = dummy
    return result


def _subject(node: Node) -> str:
    keys = node.first_message().keys
    return keys.subject if keys is not None else ""


def _is_reply(node: Node) -> bool:
    return node.number is not None and node.keys is not None and node.keys.subject_reply


def _sort_siblings(nodes: list[Node]) -> None:
    """RFC 5256 step 7: every set of siblings by sent date, deepest first."""
    todo = list(nodes)
    order: list[Node] = []
    while todo:
        node = todo.pop()
        order.append(node)
        todo.extend(node.children)
    for node in reversed(order):
        if len(node.children) > 1:
            node.children.sort(key=Node.date_key)


def render(roots: Sequence[Node]) -> bytes:
    """The thread list of a THREAD response: "(1 2)(3 (4)(5))" (RFC 5256 section 4)."""
    return b"".join(
        b"(%d)" % root.number if root.number is not None and not root.children else b"(" + _chain(root) + b")"
        for root in roots
    )


def _chain(node: Node) -> bytes:
    parts: list[bytes] = []
    current = node
    while True:
        if current.number is not None:
            parts.append(b"%d" % current.number)
        if len(current.children) == 1 and current.number is not None:
            current = current.children[0]
            continue
        if current.children:
            parts.append(b"".join(b"(" + _chain(child) + b")" for child in current.children))
        break
    return b" ".join(parts)
