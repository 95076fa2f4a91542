from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("message", "index", "last", "data", "control", "chunk")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    message: int
    index: int
    last: bool
    data: DataHeader
    control: ControlHeader
    chunk: bytes
    def __init__(self, message: _Optional[int] = ..., index: _Optional[int] = ..., last: bool = ..., data: _Optional[_Union[DataHeader, _Mapping]] = ..., control: _Optional[_Union[ControlHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("kind", "lane", "part", "step", "mb")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MB_FIELD_NUMBER: _ClassVar[int]
    kind: str
    lane: int
    part: int
    step: int
    mb: int
    def __init__(self, kind: _Optional[str] = ..., lane: _Optional[int] = ..., part: _Optional[int] = ..., step: _Optional[int] = ..., mb: _Optional[int] = ...) -> None: ...

class TensorHeader(_message.Message):
    __slots__ = ("key", "dtype", "shape", "nbytes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    key: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    def __init__(self, key: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ...) -> None: ...

class DataHeader(_message.Message):
    __slots__ = ("tag", "state_dict", "tensors")
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATE_DICT_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tag: Tag
    state_dict: bool
    tensors: _containers.RepeatedCompositeFieldContainer[TensorHeader]
    def __init__(self, tag: _Optional[_Union[Tag, _Mapping]] = ..., state_dict: bool = ..., tensors: _Optional[_Iterable[_Union[TensorHeader, _Mapping]]] = ...) -> None: ...

class ControlHeader(_message.Message):
    __slots__ = ("nbytes",)
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    nbytes: int
    def __init__(self, nbytes: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: int
    def __init__(self, messages: _Optional[int] = ...) -> None: ...
