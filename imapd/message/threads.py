"""THREAD algorithms (RFC 5256 ORDEREDSUBJECT and REFERENCES; REFS as Dovecot does it).

Pure: messages in (number + SortKeys), the THREAD response's thread list out
(`thread_list`). Every loop is linear or n log n in the number of messages;
reference chains are bounded by `sort_keys.message_ids`.

The containers of the algorithm are indexes into flat lists (number, parent,
date key, children) rather than one object each: at 50,000 messages the
object form built ~100,000 objects tracked by the cyclic GC (each container,
its children list, parent/child cycles), and the collections they triggered
cost a third of the time (issue 17: 320 ms against Dovecot's 173 ms). Ints
are not tracked, and only containers with children get a list. Since mem17
the number, sent date and parent columns are typed arrays and the input is
`thread_input.ThreadInput` (Message-IDs interned to ints): no int or bytes
object per message at the peak of a million-message THREAD (issue 17).
tests/reference_threads.py keeps the object form, and a property test
compares the two.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from operator import itemgetter
from typing import Final

from imapd.message.thread_input import ThreadColumns, ThreadInput
from mailparse.sort_keys import SortKeys
from mailparse.sort_spec import ThreadAlgorithm

__all__ = ["ThreadAlgorithm", "ThreadColumns", "ThreadInput", "thread_columns", "thread_list", "thread_list_of"]

_NONE: Final = -1
# (sent date, number) in one int: numbers (UIDs, sequence numbers) are below 2**32.
_NUMBER_BITS: Final = 32
_OLDEST: Final = -(2**100)


class _Forest:
    """Containers 0..n-1 in the order they were made, as typed arrays (no int object per
    container); a dummy has number 0 (message numbers start at 1). A message's date key is
    its (sent, number) in one int."""

    __slots__ = ("children", "number", "parent", "reply", "sent", "subject")

    def __init__(self) -> None:
        self.number: array[int] = array("q")
        self.sent: array[int] = array("q")
        self.subject: list[str] = []
        self.reply = bytearray()
        self.parent: array[int] = array("q")
        self.children: list[list[int] | None] = []

    def dummy(self) -> int:
        self.number.append(0)
        self.sent.append(0)
        self.subject.append("")
        self.reply.append(0)
        self.parent.append(_NONE)
        self.children.append(None)
        return len(self.number) - 1

    def messages(self, columns: ThreadInput) -> None:
        """One container per message, none made before (ORDEREDSUBJECT)."""
        assert not self.number
        self.number = array("q", columns.numbers)
        self.sent = array("q", columns.sents)
        self.subject = list(columns.subjects)
        self.reply = bytearray(columns.replies)
        self.parent = array("q", [_NONE]) * len(self.number)
        self.children = [None] * len(self.number)

    def adopt(self, parent: int, child: int) -> None:
        old = self.parent[child]
        if old != _NONE:
            siblings = self.children[old]
            assert siblings is not None
            siblings.remove(child)
        self.parent[child] = parent
        kids = self.children[parent]
        if kids is None:
            self.children[parent] = [child]
        else:
            kids.append(child)

    def is_ancestor_of(self, node: int, other: int) -> bool:
        parent = self.parent
        while other != _NONE:
            if other == node:
                return True
            other = parent[other]
        return False

    def first_message(self, node: int) -> int:
        """Itself, or for a dummy its first child that is a message (after sorting)."""
        number, children = self.number, self.children
        while not number[node]:
            kids = children[node]
            if not kids:
                break
            node = kids[0]
        return node

    def date_key(self, node: int) -> int:
        number = self.number[node]
        if not number:
            node = self.first_message(node)
            number = self.number[node]
            if not number:
                return _OLDEST
        return (self.sent[node] << _NUMBER_BITS) + number

    def latest_key(self, node: int) -> int:
        """The newest (sent date, number) in the whole subtree (REFS orders threads by it)."""
        best = _OLDEST
        number, sent, children = self.number, self.sent, self.children
        todo = [node]
        while todo:
            node = todo.pop()
            if number[node]:
                date = (sent[node] << _NUMBER_BITS) + number[node]
                best = max(best, date)
            kids = children[node]
            if kids:
                todo.extend(kids)
        return best

    def is_reply(self, node: int) -> bool:
        return bool(self.number[node]) and bool(self.reply[node])

    def base_subject(self, node: int) -> str:
        return self.subject[self.first_message(node)]


def thread_list(algorithm: ThreadAlgorithm, messages: Sequence[tuple[int, SortKeys]]) -> bytes:
    """The thread list of a THREAD response for `messages` (number, keys): "(1 2)(3 (4)(5))"."""
    ordered = sorted(messages, key=itemgetter(0))
    return thread_list_of(algorithm, [n for n, _ in ordered], [k for _, k in ordered])


def thread_list_of(algorithm: ThreadAlgorithm, numbers: Sequence[int], keys: Sequence[SortKeys]) -> bytes:
    """`thread_list` of `numbers` (ascending) whose keys are `keys[i]`."""
    return thread_columns(algorithm, ThreadColumns.of(numbers, keys))


def thread_columns(algorithm: ThreadAlgorithm, columns: ThreadColumns | ThreadInput) -> bytes:
    """`thread_list` of the messages of `columns`."""
    compact = ThreadInput.of(columns) if isinstance(columns, ThreadColumns) else columns
    forest = _Forest()
    if algorithm is ThreadAlgorithm.ORDEREDSUBJECT:
        forest.messages(compact)
        roots = _ordered_subject(forest)
    else:
        roots = _reference_roots(forest, compact)
        if algorithm is ThreadAlgorithm.REFERENCES:
            # Step 5: a dummy root is dated (and, in step 6, named) by its first child by date.
            for root in roots:
                kids = forest.children[root]
                if not forest.number[root] and kids:
                    kids.sort(key=forest.date_key)
            roots.sort(key=forest.date_key)
            roots = _merge_by_subject(forest, roots)
            _sort_siblings(forest, roots)
            roots.sort(key=forest.date_key)
        else:
            _sort_siblings(forest, roots)
            roots.sort(key=forest.latest_key)
    return _render(forest, roots)


def _ordered_subject(forest: _Forest) -> list[int]:
    subject = forest.subject
    date = [(sent << _NUMBER_BITS) + number for sent, number in zip(forest.sent, forest.number, strict=True)]
    # By (subject, sent, number): two stable sorts keyed by the columns themselves (C calls).
    order = sorted(range(len(subject)), key=date.__getitem__)
    order.sort(key=subject.__getitem__)
    roots: list[int] = []
    current = _NONE
    for node in order:
        if current != _NONE and subject[current] == subject[node]:
            forest.adopt(current, node)
        else:
            current = node
            roots.append(node)
    roots.sort(key=date.__getitem__)
    return roots


def _reference_roots(forest: _Forest, columns: ThreadInput) -> list[int]:
    """RFC 5256 REFERENCES steps 1-4: link containers by msg-id, gather roots, prune dummies."""
    # The container of each interned Message-ID (_NONE: none yet).
    table: array[int] = array("q", [_NONE]) * columns.id_count
    number, sent_of, subject, reply = forest.number, forest.sent, forest.subject, forest.reply
    parent, children = forest.parent, forest.children
    ids, refs, ref_starts, ref_counts = columns.ids, columns.refs, columns.ref_starts, columns.ref_counts
    sents, subjects, replies = columns.sents, columns.subjects, columns.replies
    for i, num in enumerate(columns.numbers):
        # 1.A: link the References chain, never re-parenting and never making a loop.
        previous = _NONE
        start = ref_starts[i]
        for r in range(start, start + ref_counts[i]):
            ref = refs[r]
            container = table[ref]
            if container == _NONE:
                container = table[ref] = forest.dummy()
            if (
                previous != _NONE
                and parent[container] == _NONE
                # (a container without children is an ancestor of nothing but itself)
                and (
                    container != previous if not children[container] else not forest.is_ancestor_of(container, previous)
                )
            ):
                forest.adopt(previous, container)
            previous = container
        # 1.B: this message's own container; a duplicate Message-ID gets a fresh one. (Inline:
        # this loop runs once per message, and a call per container was a fifth of THREAD.)
        own = _NONE
        message_id = ids[i]
        if message_id != _NONE:
            existing = table[message_id]
            if existing == _NONE:
                own = table[message_id] = len(number)
            elif not number[existing]:
                own = existing  # named by an earlier message's References
        if own == _NONE or own == len(number):
            own = len(number)
            number.append(num)
            sent_of.append(sents[i])
            subject.append(subjects[i])
            reply.append(replies[i])
            parent.append(_NONE)
            children.append(None)
            if previous != _NONE:
                forest.adopt(previous, own)  # new: it has no descendants, so it cannot be an ancestor
            continue
        number[own], sent_of[own], subject[own], reply[own] = num, sents[i], subjects[i], replies[i]
        # The last reference is the parent; a link it had from a truncated chain is replaced.
        if parent[own] != _NONE:
            siblings = children[parent[own]]
            assert siblings is not None
            siblings.remove(own)
            parent[own] = _NONE
        if previous != _NONE and not forest.is_ancestor_of(own, previous):
            forest.adopt(previous, own)
    del table
    # 2: the root set, in the order the containers were made (the object form's table order).
    roots = [node for node, up in enumerate(parent) if up == _NONE]
    # 4: prune dummies.
    return _prune(forest, roots)


def _prune(forest: _Forest, roots: list[int]) -> list[int]:
    """RFC 5256 step 4 over the whole forest, children before parents (a loop, not recursion:
    a reply chain thousands deep is ordinary mail, and Python's stack is ~1,000 frames)."""
    number, parent, children = forest.number, forest.parent, forest.children
    for node in reversed(_preorder(children, roots)):
        kids = children[node]
        if not kids:
            continue  # (most messages have none: no new list)
        kept: list[int] = []
        for child in kids:
            if number[child]:
                kept.append(child)
            else:
                kept.extend(children[child] or ())  # 4.A: an empty dummy goes; 4.B: promote
        children[node] = kept
        for child in kept:
            parent[child] = node
    top: list[int] = []
    for node in roots:
        kids = children[node]
        if number[node]:
            top.append(node)
        elif not kids:
            continue
        elif len(kids) == 1:
            # 4.B: promote the children, but not several of them to the root level.
            parent[kids[0]] = _NONE
            top.append(kids[0])
        else:
            top.append(node)
    return top


def _merge_by_subject(forest: _Forest, roots: list[int]) -> list[int]:
    """RFC 5256 REFERENCES step 6: gather root threads with the same base subject."""
    number, reply, is_reply = forest.number, forest.reply, forest.is_reply
    # A root's base subject is its first message's; in the loops below a root's first child
    # changes only at its own turn, so the subject is read once.
    subject_of = forest.subject
    subjects = [subject_of[root] if number[root] else forest.base_subject(root) for root in roots]
    table: dict[str, int] = {}
    shared: set[str] = set()  # the subjects of more than one root: only they merge
    for root, subject in zip(roots, subjects, strict=True):
        if not subject:
            continue
        old = table.get(subject)
        if old is None:
            table[subject] = root
            continue
        shared.add(subject)
        if (not number[root] and number[old]) or (number[old] and reply[old] and number[root] and not reply[root]):
            table[subject] = root
    result: list[int] = []
    placed: dict[int, int] = {}  # table entry -> its index in result
    for root, subject in zip(roots, subjects, strict=True):
        if subject not in shared:
            result.append(root)  # no other root names it, nor is placed by it
            continue
        entry = table[subject]
        if entry in (_NONE, root):
            if root not in placed:
                placed[root] = len(result)
                result.append(root)
            continue
        if entry not in placed:
            placed[entry] = len(result)
            result.append(entry)
        if not number[entry] and not number[root]:
            for child in list(forest.children[root] or ()):
                forest.adopt(entry, child)
        elif not number[entry] or (not is_reply(entry) and is_reply(root)):
            # The entry is a dummy, or the original of which this root is a reply.
            forest.adopt(entry, root)
        else:
            dummy = forest.dummy()
            index = placed.pop(entry)
            forest.adopt(dummy, entry)
            forest.adopt(dummy, root)
            result[index] = dummy
            placed[dummy] = index
            table[subject] = dummy
    return result


def _sort_siblings(forest: _Forest, nodes: list[int]) -> None:
    """RFC 5256 step 7: every set of siblings by sent date, deepest first."""
    children, date_key = forest.children, forest.date_key
    for node in reversed(_preorder(children, nodes)):
        kids = children[node]
        if kids is not None and len(kids) > 1:
            kids.sort(key=date_key)


def _preorder(children: Sequence[list[int] | None], roots: Sequence[int]) -> list[int]:
    """Every node under `roots`, each before its children (reversed: children before
    parents); a loop, not recursion, for reply chains thousands deep."""
    order: list[int] = []
    todo = list(roots)
    while todo:
        node = todo.pop()
        order.append(node)
        kids = children[node]
        if kids:
            todo.extend(kids)
    return order


def _render(forest: _Forest, roots: Sequence[int]) -> bytes:
    """RFC 5256 section 4: a root alone is "(n)"; a chain of only children "(n m k)"; several
    children "(n (m)(k ...))". A loop over a stack of pieces and nodes, not recursion; written
    into one buffer (a list of a bytes piece per message was a third of a huge THREAD's peak)."""
    number, children = forest.number, forest.children
    out = bytearray()
    todo: list[bytes | int] = []
    for root in reversed(roots):
        if number[root] and not children[root]:
            todo.append(b"(%d)" % number[root])
        else:
            todo += (b")", root, b"(")
    while todo:
        item = todo.pop()
        if isinstance(item, bytes):
            out += item
            continue
        current = item
        first = True
        while True:
            kids = children[current]
            if not number[current]:
                break
            if not first:
                out += b" "
            out += b"%d" % number[current]
            first = False
            if kids is None or len(kids) != 1:
                break
            current = kids[0]
        if kids:
            if not first:
                out += b" "
            for child in reversed(kids):
                todo += (b")", child, b"(")
    return bytes(out)
